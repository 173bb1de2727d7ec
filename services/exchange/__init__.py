"""Document exchange: submit, route, deliver, acknowledge, track."""
