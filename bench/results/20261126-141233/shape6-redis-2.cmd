taskset -c 1 build/bench/flood/flood --proto redis --port 23920 --server-pid 6421 --subs 10000 --pubs 0 --duration 3
