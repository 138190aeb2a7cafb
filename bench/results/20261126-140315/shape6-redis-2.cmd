taskset -c 1 build/bench/flood/flood --proto redis --port 20921 --server-pid 3231 --subs 10000 --pubs 0 --duration 3
