taskset -c 1 build/bench/flood/flood --proto nats --port 20368 --server-pid 19018 --subs 1000 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
