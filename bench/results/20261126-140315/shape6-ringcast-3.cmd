taskset -c 1 build/bench/flood/flood --proto line --port 37519 --server-pid 3517 --subs 10000 --pubs 0 --duration 3
