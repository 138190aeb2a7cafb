taskset -c 1 build/bench/flood/flood --proto line --port 39405 --server-pid 25905 --subs 10000 --pubs 0 --duration 3
