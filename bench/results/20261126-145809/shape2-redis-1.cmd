taskset -c 1 build/bench/flood/flood --proto redis --port 20120 --server-pid 23743 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 8 --warmup 2
