taskset -c 1 build/bench/flood/flood --proto nats --port 30907 --server-pid 21109 --subs 10 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
