taskset -c 1 build/bench/flood/flood --proto line --port 42799 --server-pid 8196 --subs 10000 --pubs 0 --duration 3
