taskset -c 1 build/bench/flood/flood --proto line --port 38025 --server-pid 24545 --subs 10000 --pubs 0 --duration 3
