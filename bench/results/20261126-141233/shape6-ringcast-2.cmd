taskset -c 1 build/bench/flood/flood --proto line --port 39899 --server-pid 6448 --subs 10000 --pubs 0 --duration 3
