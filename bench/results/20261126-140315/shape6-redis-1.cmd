taskset -c 1 build/bench/flood/flood --proto redis --port 20598 --server-pid 2945 --subs 10000 --pubs 0 --duration 3
