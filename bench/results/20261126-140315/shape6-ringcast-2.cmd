taskset -c 1 build/bench/flood/flood --proto line --port 43839 --server-pid 3257 --subs 10000 --pubs 0 --duration 3
