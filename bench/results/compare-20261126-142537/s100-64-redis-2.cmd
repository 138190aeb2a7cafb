taskset -c 1 build/bench/flood/flood --proto redis --port 25847 --server-pid 20041 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
