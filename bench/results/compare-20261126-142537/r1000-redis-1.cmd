taskset -c 1 build/bench/flood/flood --proto redis --port 29424 --server-pid 19742 --subs 100 --pubs 1 --size 64 --rate 1000 --verify 10 --read-interval 5000 --duration 5 --warmup 1
