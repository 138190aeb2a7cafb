taskset -c 1 build/bench/flood/flood --proto nats --port 24288 --server-pid 20072 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
