taskset -c 1 build/bench/flood/flood --proto redis --port 29004 --server-pid 25349 --subs 10000 --pubs 0 --duration 3
