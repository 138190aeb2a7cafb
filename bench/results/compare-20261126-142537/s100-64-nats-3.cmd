taskset -c 1 build/bench/flood/flood --proto nats --port 24235 --server-pid 20860 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
