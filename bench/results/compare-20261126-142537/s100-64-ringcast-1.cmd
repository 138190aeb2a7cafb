taskset -c 1 build/bench/flood/flood --proto line --port 37415 --server-pid 17859 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
