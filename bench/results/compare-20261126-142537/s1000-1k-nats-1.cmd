taskset -c 1 build/bench/flood/flood --proto nats --port 21837 --server-pid 19692 --subs 1000 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
