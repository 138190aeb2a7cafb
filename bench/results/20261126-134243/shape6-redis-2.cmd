taskset -c 1 build/bench/flood/flood --proto redis --port 23311 --server-pid 25619 --subs 10000 --pubs 0 --duration 3
