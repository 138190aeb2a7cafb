taskset -c 1 build/bench/flood/flood --proto line --port 46157 --server-pid 2922 --subs 10000 --pubs 0 --duration 3
