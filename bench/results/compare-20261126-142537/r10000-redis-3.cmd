taskset -c 1 build/bench/flood/flood --proto redis --port 30227 --server-pid 21516 --subs 100 --pubs 1 --size 64 --rate 10000 --verify 10 --read-interval 5000 --duration 5 --warmup 1
