taskset -c 1 build/bench/flood/flood --proto nats --port 23384 --server-pid 21027 --subs 1 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
