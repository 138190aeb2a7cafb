taskset -c 1 build/bench/flood/flood --proto redis --port 20422 --server-pid 21327 --subs 1000 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
