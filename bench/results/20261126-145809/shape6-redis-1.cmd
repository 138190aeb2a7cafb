taskset -c 1 build/bench/flood/flood --proto redis --port 30491 --server-pid 23953 --subs 10000 --pubs 0 --duration 3
