taskset -c 1 build/bench/flood/flood --proto nats --port 25741 --server-pid 20693 --subs 1 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
