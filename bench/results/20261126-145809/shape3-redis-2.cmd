taskset -c 1 build/bench/flood/flood --proto redis --port 23438 --server-pid 24089 --subs 1000 --pubs 1 --size 64 --rate 0 --verify 2 --duration 8 --warmup 2
