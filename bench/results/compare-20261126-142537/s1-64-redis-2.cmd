taskset -c 1 build/bench/flood/flood --proto redis --port 23989 --server-pid 19875 --subs 1 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
