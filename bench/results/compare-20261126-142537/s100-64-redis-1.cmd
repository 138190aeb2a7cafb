taskset -c 1 build/bench/flood/flood --proto redis --port 26104 --server-pid 17907 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
