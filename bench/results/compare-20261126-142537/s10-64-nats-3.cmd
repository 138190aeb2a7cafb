taskset -c 1 build/bench/flood/flood --proto nats --port 27893 --server-pid 20776 --subs 10 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
