taskset -c 1 build/bench/flood/flood --proto redis --port 22658 --server-pid 20458 --subs 1000 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
