"""The part of OnPrintShop's GraphQL schema the gateway uses, with its names and argument types as
published (types trimmed to the fields a CRM sync reads)."""
from __future__ import annotations

from graphql import build_schema

SDL = """
scalar JSON

enum OrdersOrderTypeEnum { gt lt }
enum CustomerDateTypeEnum { login registration }
enum OrderStatusUpdateTypeEnum { order product }

type Customer {
  userid: Int
  customers_email_address: String
  customers_first_name: String
  customers_last_name: String
  customers_name: String
  customers_company: String
  customers_telephone: String
  customers_status: String
  customers_register_date: String
  external_ref: String
}

type Order {
  orders_id: Int!
  order_number: String
  user_id: Int
  customer: Customer
  orders_status_id: Int
  order_status: String
  payment_status_title: String
  total_amount: Float
  order_amount: Float
  tax_amount: JSON
  currency_code: String
  order_last_modified_date: String
  invoice_date: String
  payment_date: String
}

type OrderData { currentCount: Int orders: [Order]! totalOrders: Int }
type CustomerData { currentCount: Int customers: [Customer]! totalCustomers: Int }

type OrderStatus {
  process_status_id: Int
  process_status_internal: Int
  process_status_set_as: String
  process_status_title: String
  status_type: String
}
type OrderStatusData { currentCount: Int orderStatus: [OrderStatus]! totalOrderStatus: Int }

input UpdateOrderStatusInput {
  comment: String
  courier_company_name: String
  notify: Int
  order_product_status: String
  order_status: String
  product_info: String
  shipping_method: String
  shipping_type: String
  template_info: String
  tracking_number: String
}
type UpdateOrderStatusData { id: Int message: String! result: Boolean! }

input SetCustomerInput {
  admin_extra_fields: JSON
  company_name: String
  corporateid: Int
  departmentid: Int
  email: String
  external_ref: String
  first_name: String
  last_name: String
  password: String
  payon_account: Int
  payon_limit: Int
  phone_no: String
  registration_type: Int
  secondary_emails: String
  set_password: Int
  status: Int
  tax_exemption: Int
  user_group: Int
}
type SetCustomerData { external_ref: String id: Int message: String! result: Boolean! }

type Query {
  orders(customer_email: String, customer_id: Int, from_date: String, limit: Int, offset: Int, order_product_status: Int,
         order_status: String, order_type: OrdersOrderTypeEnum, orders_id: Int, orders_products_id: Int, store_id: String,
         to_date: String): OrderData
  customers(corporate_id: Int, date_type: CustomerDateTypeEnum, department_id: Int, email: String, from_date: String,
            limit: Int, offset: Int, to_date: String): CustomerData
  orderStatus(limit: Int, offset: Int, process_status_id: Int): OrderStatusData
}

type Mutation {
  updateOrderStatus(input: UpdateOrderStatusInput!, orders_id: Int, orders_products_id: Int,
                    type: OrderStatusUpdateTypeEnum!): UpdateOrderStatusData
  setCustomer(customer_id: Int, input: SetCustomerInput!): SetCustomerData
}
"""

SCHEMA = build_schema(SDL)
