"""What crosses the network between gateways: the DHT value envelope, announcements, leader records."""
