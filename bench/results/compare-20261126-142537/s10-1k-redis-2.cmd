taskset -c 1 build/bench/flood/flood --proto redis --port 26150 --server-pid 20291 --subs 10 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
