taskset -c 1 build/bench/flood/flood --proto nats --port 22786 --server-pid 18089 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
