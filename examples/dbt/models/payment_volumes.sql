-- Payment volume per country: no customer identities left.
select country, count(*) as payments, sum(amount) as volume
from {{ ref('customer_payments') }}
group by country
