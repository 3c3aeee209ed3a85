CREATE DATABASE redvest_intake;
CREATE DATABASE redvest_dispatch;
CREATE DATABASE redvest_points;
CREATE DATABASE redvest_notify;
