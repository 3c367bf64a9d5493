-- One row per payment with the paying customer's country.
select p.payment_id, p.customer_id, c.country, p.amount
from {{ source('raw', 'payments') }} as p
join {{ source('raw', 'customers') }} as c using (customer_id)
