taskset -c 1 build/bench/flood/flood --proto line --port 32977 --server-pid 6125 --subs 10000 --pubs 0 --duration 3
