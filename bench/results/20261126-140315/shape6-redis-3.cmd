taskset -c 1 build/bench/flood/flood --proto redis --port 31851 --server-pid 3541 --subs 10000 --pubs 0 --duration 3
