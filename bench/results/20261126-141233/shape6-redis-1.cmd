taskset -c 1 build/bench/flood/flood --proto redis --port 22476 --server-pid 6149 --subs 10000 --pubs 0 --duration 3
