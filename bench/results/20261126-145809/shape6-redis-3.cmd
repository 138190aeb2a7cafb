taskset -c 1 build/bench/flood/flood --proto redis --port 28635 --server-pid 24572 --subs 10000 --pubs 0 --duration 3
