taskset -c 1 build/bench/flood/flood --proto redis --port 25855 --server-pid 8217 --subs 10000 --pubs 0 --duration 3
