taskset -c 1 build/bench/flood/flood --proto redis --port 30652 --server-pid 24241 --subs 10000 --pubs 0 --duration 3
