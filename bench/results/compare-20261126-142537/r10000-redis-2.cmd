taskset -c 1 build/bench/flood/flood --proto redis --port 24567 --server-pid 20619 --subs 100 --pubs 1 --size 64 --rate 10000 --verify 10 --read-interval 5000 --duration 5 --warmup 1
