taskset -c 1 build/bench/flood/flood --proto line --port 35509 --server-pid 24269 --subs 10000 --pubs 0 --duration 3
