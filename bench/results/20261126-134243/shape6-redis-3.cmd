taskset -c 1 build/bench/flood/flood --proto redis --port 28257 --server-pid 26280 --subs 10000 --pubs 0 --duration 3
