-- A small generated rental business: 2,000 customers and 50,000 bookings created over the
-- last 720 hours. The production database of the demo and of the restore and incident tests.
create table customers (id serial primary key, name text not null, created_at timestamptz not null);
create table bookings (
  id bigserial primary key,
  customer_id int not null references customers,
  starts_on date not null,
  created_at timestamptz not null
);
create index bookings_created_at on bookings (created_at);
insert into customers (name, created_at)
  select 'customer ' || g, now() - (g || ' hours')::interval from generate_series(1, 2000) g;
insert into bookings (customer_id, starts_on, created_at)
  select 1 + (g % 2000), current_date + (g % 90), now() - ((g % 720) || ' hours')::interval
  from generate_series(1, 50000) g;
