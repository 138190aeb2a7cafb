taskset -c 1 build/bench/flood/flood --proto redis --port 23564 --server-pid 17469 --subs 10 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
