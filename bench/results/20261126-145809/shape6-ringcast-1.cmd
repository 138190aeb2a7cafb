taskset -c 1 build/bench/flood/flood --proto line --port 40111 --server-pid 23923 --subs 10000 --pubs 0 --duration 3
