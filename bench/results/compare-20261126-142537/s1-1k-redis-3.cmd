taskset -c 1 build/bench/flood/flood --proto redis --port 25222 --server-pid 21079 --subs 1 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
