taskset -c 1 build/bench/flood/flood --proto nats --port 26668 --server-pid 19425 --subs 1 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
