taskset -c 1 build/bench/flood/flood --proto redis --port 29453 --server-pid 19562 --subs 100 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
