taskset -c 1 build/bench/flood/flood --proto line --port 35715 --server-pid 25326 --subs 10000 --pubs 0 --duration 3
