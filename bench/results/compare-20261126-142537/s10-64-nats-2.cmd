taskset -c 1 build/bench/flood/flood --proto nats --port 20756 --server-pid 19989 --subs 10 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
