taskset -c 1 build/bench/flood/flood --proto nats --port 23784 --server-pid 20406 --subs 100 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
