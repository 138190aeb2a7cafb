taskset -c 1 build/bench/flood/flood --proto line --port 35655 --server-pid 25644 --subs 10000 --pubs 0 --duration 3
